"""Examples, installed as ``eventbus.examples``: the Keras guide's callbacks as
subscribers (:mod:`eventbus.examples.seed_callbacks`) and the demo
(:mod:`eventbus.examples.demo`, run by ``eventbus demo``)."""
