from optlab.cli import main  # light: the heavy imports come after the signal handlers (optlab.interrupts)

main()
