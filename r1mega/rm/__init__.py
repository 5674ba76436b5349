"""Preference reward models for general (non-reasoning) prompts in R1's all-scenario RL.

``config``           RewardModelConfig / AllScenarioConfig dataclasses
``scorer``           RewardModelScorer: a local Hugging Face sequence classifier (num_labels=1)
``tiny``             build_random_reward_model: a tiny random classifier for CPU pipelines/tests
``router``           RewardRouter: data_source -> rule rewards or the reward model
``general_prompts``  the bundled, deterministic set of general prompts
"""
