"""Quality at equal compute: budget -> config heuristic, `train` sweep points, loss laws, figures."""
