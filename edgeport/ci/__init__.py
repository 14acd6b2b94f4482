"""CI builds: ``edgeport build edgeport.yaml`` runs every model x target of a config file,
caches whole targets by content hash, applies gates and regression checks, and writes one
``summary.json`` + ``index.html``; ``edgeport merge`` joins the summaries of CI shards.

Modules: ``config`` (the file, validated with line numbers), ``cache`` (content keys and the
bundle store), ``worker`` (one target in a child process), ``runner`` (the build: selection,
shards, parallel jobs, progress), ``summary`` (metrics, gates, regressions, merge) and
``index`` (the HTML page).
"""
