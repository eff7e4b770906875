from alignpro.report.cli import main

main()
