"""An example seqrl plug-in package: a reward, a potential and an environment by entry point."""
