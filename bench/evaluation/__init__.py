"""Scoring: predictions carried back to each label file's grid, and Dice, normalized surface Dice
and HD95 per case and organ in the nnU-Net convention."""
