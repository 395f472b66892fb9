// Implemented by the config part owner.
