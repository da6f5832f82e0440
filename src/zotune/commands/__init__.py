"""The built-in recipes: one module per ``zotune`` subcommand (``train``, ``eval``, ``replay``, ``plan``, ``push``,
``bench``, ``list``), each with ``add_arguments(parser, add_setting_flags)`` and ``run(args, say)`` as a plug-in's
recipe has (``zotune.recipes``, where they are registered by path). ``flags.py`` builds flags from settings."""
