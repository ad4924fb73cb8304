"""Training: teachers, photos, paired data and the base/concept trainers."""
