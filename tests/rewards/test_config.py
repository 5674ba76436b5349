"""RewardConfig: defaults, construction from plain dicts, and error messages that name the field."""

from __future__ import annotations

import pytest

from r1mega.rewards import registry
from r1mega.rewards.config import ComponentConfig, RewardConfig, SourceRewardConfig, default_sources


def _names(config: RewardConfig, source: str) -> list[str]:
    return [c.name for c in config.sources[source].components]


def test_default_recipe():
    config = RewardConfig()
    assert set(config.sources) == {"math", "code", "synthetic"}
    assert _names(config, "synthetic") == ["math_accuracy", "format"]
    assert _names(config, "math") == ["math_accuracy", "format"]
    assert _names(config, "code") == ["code_accuracy", "format"]
    assert config.num_workers is None and config.start_method == "forkserver"


def test_from_dict_builds_typed_objects():
    config = RewardConfig.from_dict({
        "num_workers": 3,
        "sources": {"gsm8k": {"components": [
            {"name": "math_accuracy", "weight": 2, "options": {"timeout_s": 1.5}},
            {"name": "language", "weight": 0.5, "key": "lang", "options": {"target": "zh"}},
        ]}},
    })
    assert config.num_workers == 3 and config.resolved_workers() == 3
    source = config.sources["gsm8k"]
    assert isinstance(source, SourceRewardConfig)
    assert isinstance(source.components[0], ComponentConfig)
    assert source.components[0].weight == 2.0 and isinstance(source.components[0].weight, float)
    assert [c.result_key for c in source.components] == ["math_accuracy", "lang"]
    assert list(config.sources) == ["gsm8k"]  # giving sources replaces the defaults


def test_nested_dicts_accepted_by_the_constructor():
    # the shape OmegaConf.to_object returns for an unstructured config
    config = RewardConfig(sources={"math": {"components": [{"name": "format", "options": {"mode": "answer_tag"}}]}})
    assert config.sources["math"].components[0].options == {"mode": "answer_tag"}


def test_default_sources_can_be_merged():
    sources = default_sources()
    sources["mine"] = SourceRewardConfig([ComponentConfig("math_accuracy")])
    assert set(RewardConfig(sources=sources).sources) == {"math", "code", "synthetic", "mine"}


@pytest.mark.parametrize("data, message", [
    ({"num_workerz": 2}, "config: unknown field 'num_workerz'"),
    ({"num_workers": -1}, "config.num_workers must be >= 0"),
    ({"num_workers": "two"}, "config.num_workers: expected an integer, got 'two'"),
    ({"start_method": "thread"}, "config.start_method must be one of"),
    ({"sources": {}}, "config.sources must name at least one data source"),
    ({"sources": {"math": {"components": []}}}, "config.sources.math: components must not be empty"),
    ({"sources": {"math": {"components": [{"name": "accuracy"}]}}},
     "unknown reward component 'accuracy'"),
    ({"sources": {"math": {"components": [{"name": "math_accuracy", "options": {"timeout": 1}}]}}},
     "options: unknown field 'timeout'"),
    ({"sources": {"math": {"components": [{"name": "math_accuracy", "options": {"timeout_s": -1}}]}}},
     "timeout_s must be > 0; got -1.0"),
    ({"sources": {"math": {"components": [{"name": "format", "options": {"mode": "xml"}}]}}},
     "mode must be one of think, answer_tag; got 'xml'"),
    ({"sources": {"math": {"components": [{"name": "code_accuracy", "options": {"languages": ["rust"]}}]}}},
     "languages[] must be one of python, cpp; got 'rust'"),
    ({"sources": {"math": {"components": [{"name": "format", "weight": "1"}]}}},
     "config.sources.math.components[0].weight: expected a number, got '1'"),
    ({"sources": {"math": {"components": [{"name": "format"}, {"name": "format"}]}}},
     "duplicate key 'format'"),
    ({"sources": {"math": {"components": [{"name": "language", "options": {"target": "xx"}}]}}},
     "target must be one of"),
    ({"sources": {"math": {"components": [{"name": "overlong", "options": {"buffer": 10, "max_length": 5}}]}}},
     "buffer must be <= max_length"),
])
def test_errors_name_the_field(data, message):
    with pytest.raises(ValueError) as info:
        RewardConfig.from_dict(data)
    assert message in str(info.value)


def test_every_registered_component_has_default_options():
    for name in registry.names():
        component = registry.build(name, {})
        assert component.name == name


def test_two_instances_of_a_component_need_keys():
    ok = SourceRewardConfig([ComponentConfig("language", key="lang_en"),
                             ComponentConfig("language", key="lang_zh", options={"target": "zh"})])
    assert [c.result_key for c in ok.components] == ["lang_en", "lang_zh"]


def test_omegaconf_round_trip():
    from omegaconf import OmegaConf

    structured = OmegaConf.structured(RewardConfig)
    structured.num_workers = 4
    structured.sources.math.components[0].options = {"timeout_s": 2.0}
    config = OmegaConf.to_object(structured)
    assert isinstance(config, RewardConfig) and config.num_workers == 4
    assert config.sources["math"].components[0].options == {"timeout_s": 2.0}
    plain = OmegaConf.to_object(OmegaConf.create({"sources": {"mine": {"components": [{"name": "format"}]}}}))
    assert RewardConfig(**plain).sources["mine"].components[0].name == "format"


def test_dictconfig_is_accepted_directly():
    from omegaconf import OmegaConf

    from r1mega.rewards import RewardManager

    cfg = OmegaConf.create({"num_workers": 0, "sources": {"math": {"components": [
        {"name": "math_accuracy", "options": {"answer_forms": ["boxed"]}}]}}})
    config = RewardConfig.from_dict(cfg)
    assert type(config.sources["math"].components[0].options["answer_forms"]) is list
    with RewardManager(cfg) as rm:
        assert rm.score({"completion": "<think>x</think> \\boxed{2}", "data_source": "math", "answer": "2"}).reward == 1
