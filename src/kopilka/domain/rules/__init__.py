"""Programs as data: conditions, effects, the compiler and the evaluator."""
