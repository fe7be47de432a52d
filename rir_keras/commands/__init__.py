"""The `rir-keras` command line: every subcommand, in one folder above the core, the zoo and the tuner.

    main.py       the program: parses, runs a subcommand, prints its error as one line
    flags.py      what the subcommands share: data, model and training flags, and how they read them
    train.py      rir-keras train, rir-keras evaluate
    reproduce.py  rir-keras reproduce (a paper table, seed after seed), with campaign.py: the campaign
                  folder's table of results and its status
    export.py     rir-keras export (SavedModel, ONNX, .keras)
    convert.py    rir-keras convert (pytorchcv's RiR weights)
    analyze.py    rir-keras analyze (kernel quadrants, stream ablation)
    tune.py       rir-keras tune (the KerasTuner grid of rir_keras.tuning)

The library below speaks of parameters (``batch_size=128``); `main` says the flags that set them.
"""
