"""The compiled core: the training loops (engine), optimizers, schedules, second-order methods, devices."""
