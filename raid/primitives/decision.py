"""The one decision threshold: an image is called generated when P(generated) > THRESHOLD."""

THRESHOLD = 0.5
