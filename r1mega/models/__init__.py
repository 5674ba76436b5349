"""Model definitions (typed configs) and the Megatron-Core model provider."""
