/* placeholder: being written */
typedef int qfs_placeholder_bpe_json;
