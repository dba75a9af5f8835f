"""tools/model_table.py: the command line around `tf_pyramid.modeling.module_table`."""
import json

import pytest

from tools import model_table


def test_model_table_cli_json_and_text(capsys):
    assert model_table.main(["--model", "mnist_m3", "--levels", "3", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["modules"]["location"] == {"params": 5_193, "macs": 5_184}
    assert table["input_size"] == 56 and table["levels"] == 3
    model_table.main(["--model", "mnist_m3"])
    text = capsys.readouterr().out
    assert "feature_extraction" in text and "1,291,392" in text
    with pytest.raises(SystemExit):
        model_table.main(["--model", "mnist_m7"])
    assert "Unknown model name" in capsys.readouterr().err
