from alignpro.data.preferences import main
from alignpro.run.errors import run_cli

run_cli(main)
