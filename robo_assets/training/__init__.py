"""Model training: metrics, walk-forward evaluation, tracked training and tuning."""
