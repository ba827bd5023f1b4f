"""The project's own subcommands of `python -m cxr_ldm`; each module has DESCRIPTION and main(argv)."""
