"""What the course installs once and checks: `slmlab doctor`'s checks and the engines' own environments."""
