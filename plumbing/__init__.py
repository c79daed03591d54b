"""What every part of the project shares and none owns: the user-mistake error (errors), the
command-line plumbing (cli), the MLflow tags' names (tags), Spearman's rank correlation that the
scheduler and the reports both use (ranks), and where the MLflow server and its UI are (servers,
ui). Small, Ray-free and torch-free, so that ``trainables``, ``search`` and ``reports`` all import
it and none of them imports another for it."""
