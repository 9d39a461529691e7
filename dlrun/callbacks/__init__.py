"""Side concerns of the trainer (checkpoints, early stopping, TensorBoard, progress), one callback each."""
