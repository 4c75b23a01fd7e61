"""Pure tensor metric functions: outputs, activations, attention, generation."""
