// Placeholder: the shared recording Pulumi mock setup replaces this file.
export {};
