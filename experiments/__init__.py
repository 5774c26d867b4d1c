"""One script per question of the seed report; each prints a table and writes a figure."""
