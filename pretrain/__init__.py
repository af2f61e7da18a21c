"""LLM2Rec pre-training stages (csft, mntp, simcse), embedding extraction and GGUF conversion."""
