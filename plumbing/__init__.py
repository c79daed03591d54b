"""What every part of the project shares and none owns: the user-mistake error, the command-line
plumbing, and where the MLflow server and its UI are. Small, Ray-free and torch-free, so that
``trainables``, ``search`` and ``reports`` all import it and none of them imports another for it."""
