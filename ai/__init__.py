"""MedGemma integration: engines, prompts, image preparation, response parsing and safety."""
