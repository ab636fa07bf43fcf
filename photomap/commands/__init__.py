"""The three commands' argument parsing and ``main(argv) -> int``; the top-level scripts only call them."""
