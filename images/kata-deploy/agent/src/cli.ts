// Placeholder entry point; the node-agent work replaces it.
process.stderr.write("kata-deploy: not implemented yet\n");
process.exit(2);
