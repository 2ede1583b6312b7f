"""The inspection engine: model, training, scoring, camera and log. Never imports Qt."""
