from raid.cli.main import entry

entry()
