"""The cutover board: a Textual TUI over the run history (issue #7).

app.py (BoardApp: data, actions, workers), loader.py + model.py (what is shown,
computed once per refresh), screens/ (each with its .tcss), widgets/."""
