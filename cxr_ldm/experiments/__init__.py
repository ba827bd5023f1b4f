"""The papers' experiments: fine-tuning strategies (arms) trained over seeds from configs, judged by one
protocol, compared, and the papers' claims checked (`python -m cxr_ldm experiment`)."""
