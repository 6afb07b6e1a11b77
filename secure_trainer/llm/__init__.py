"""Private LoRA fine-tuning of causal language models (train-llm, user-level DP, canaries)."""
