"""Preference reward models for general (non-reasoning) prompts in R1's all-scenario RL.

``scorer``           RewardModelScorer: a local Hugging Face sequence classifier (num_labels=1)
``tiny``             build_random_reward_model: a tiny random classifier for CPU pipelines/tests
``router``           RewardRouter: data_source -> rule rewards or the reward model

Their configuration (RewardModelConfig, AllScenarioConfig) is :mod:`r1mega.config.all_scenario`;
the bundled general prompts are :mod:`r1mega.data.general_prompts`; the generative judge of
rejection sampling is :mod:`r1mega.data.judge`.
"""
