"""Serving: a trained model as an MLflow pyfunc that takes raw feature columns and returns probabilities.

``predictor.Predictor`` does the work (encode raw columns with the prepared data's own encoders, run
the network, name the outputs); ``pyfunc_model.py`` is the models-from-code file MLflow loads; and
``package.log_pyfunc`` logs a model directory as that pyfunc with its signature and input example.
"""
