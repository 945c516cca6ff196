"""The config schema (pcl_tf/config_schema.py): its field documentation and the --show_config listing."""

from pcl_tf import config_schema


def test_config_field_docs_name_real_fields():
    """--show_config's meanings come from the comments in pcl_tf/config_schema.py; each one belongs to
    a field that exists (a renamed field cannot keep a stale description)."""
    docs = config_schema.field_docs()
    fields = set()

    def walk(node, prefix=""):
        for key, value in node.items():
            walk(value, prefix + key + ".") if hasattr(value, "items") else fields.add(prefix + key)

    walk(config_schema.base_config())
    assert set(docs) == fields
    assert "Algorithm 1" in docs["adv.start"] and docs["train.num_examples"] == "0 = the whole training split"
