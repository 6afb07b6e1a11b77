"""Unit tests of secure_trainer.llm and its text fixtures."""
