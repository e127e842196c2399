"""Networks, the model contract, the zoo of published weights and checkpoints."""
