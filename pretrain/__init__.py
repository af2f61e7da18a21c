"""LLM2Rec pre-training stages (csft, mntp, ic), embedding extraction and GGUF conversion."""
