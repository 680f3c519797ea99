// Mocha root hooks for the e2e run: the matrix is printed and written once, after every spec, pass or fail.
import { writeMatrix } from "./matrix";

export const mochaHooks = {
  afterAll(): void {
    writeMatrix();
  },
};
