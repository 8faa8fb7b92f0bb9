"""Model analyses of studies: a persisted ``analysis`` job runs series selection, image
preparation, the engine, parsing and the safety layer, and stores findings and measurements."""
