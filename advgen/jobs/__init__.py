"""One function per command: the front door's implementations (`advgen.generate`, `advgen.attack`, ...).

Every job has the same shape: check its arguments and output directory before any model loads,
take the directory's lock, do the work, write its files with a manifest that records the command
(an explicit argument, or the equivalent `advgen` command line built from the job's own settings,
never `sys.argv`), leave the completion marker, and return a typed result. The CLI only parses,
calls one job and prints.
"""
