"""dlrun's Optuna sweeper for Hydra: `hydra/sweeper=dlrun_optuna`, chosen by the conf/hparams_search/ presets.

Why not the released hydra-optuna-sweeper (1.3.0): it requires optuna<3, so pip installs optuna 2.10.1 (2021), whose
SQLite storage fails beside SQLAlchemy 2, and it runs each trial as a black box, so a bad trial cannot be pruned.
This one runs on current Optuna (ask and tell), keeps the study in SQLite in the sweep dir so an interrupted search
resumes, and hands each trial to its job so the OptunaPruning callback can report and prune epoch by epoch.

Hydra imports every module of hydra_plugins.* at start-up to find plugins: nothing here imports optuna or torch
before a search begins.
"""
