complete --keep-order --exclusive --command rbox --arguments "(COMPLETE=fish rbox -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
