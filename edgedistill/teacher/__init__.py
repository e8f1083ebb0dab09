"""The teacher stage: the user's model (loaded without unpickling anything) or a built-in default."""
