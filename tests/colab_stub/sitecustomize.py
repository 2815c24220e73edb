"""On PYTHONPATH in tests/test_colab.py only: every Python process starts as a Colab kernel does, with
``google.colab`` already imported (the chapters' setup cell checks ``"google.colab" in sys.modules``)."""
import google.colab  # noqa: F401
