"""advgen: circuit-driven adversarial prompt generation for interpretability claims."""
