"""Training from configs as data: `fit.py` (`fit`, `build_run`, `fit_command_line`), `lightning_cli.py` (the
LightningCLI every fit goes through, `FitRequest`), `datamodule.py` (the data module a config describes),
`config_files.py` (what a config file says), `config_yaml.py` (a config file readable and a mapping), `tiny_pretrained.py` (the demo's pretrained pipeline). Import from
the module that holds a name: reading a config file (`config_files.file_contents`) then loads no Lightning.
"""
