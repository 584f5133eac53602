"""Tasks: what a behaviour is (slots, lexicons, templates, answer and foil, metric, corrupted twin, roles, edits)."""
