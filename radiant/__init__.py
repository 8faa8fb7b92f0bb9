"""The ``radiant`` command line: one parser that assembles the sub-commands of every package
(:mod:`radiant.cli`), their shared helpers (:mod:`radiant.common`) and one module per group of
commands (:mod:`radiant.commands`). It sits in the top layer: it may import everything below it
and nothing imports it."""
