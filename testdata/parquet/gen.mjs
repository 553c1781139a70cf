// Writes the Parquet fixtures of engine/data's tests with a writer other
// than the Go library gotune reads them with: hyparquet-writer (npm,
// pure JavaScript). Layouts are those pyarrow gives Hugging Face datasets:
// strings as UTF8 byte arrays, lists as 3-level LIST groups.
//
//   npm install hyparquet-writer@0.17.0 && node testdata/parquet/gen.mjs
import { parquetWriteFile } from 'hyparquet-writer'

const dir = new URL('.', import.meta.url).pathname
const str = (name) => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' })

parquetWriteFile({
  filename: dir + 'alpaca.parquet',
  columnData: [
    { name: 'instruction', data: ['Reverse the word.', 'Add the numbers.'], type: 'STRING' },
    { name: 'input', data: ['abc', ''], type: 'STRING' },
    { name: 'output', data: ['cba', '5'], type: 'STRING' },
  ],
})

parquetWriteFile({
  filename: dir + 'sharegpt.parquet',
  schema: [
    { name: 'schema', num_children: 2 },
    { name: 'conversations', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
    str('from'),
    str('value'),
    str('system'),
  ],
  columnData: [
    {
      name: 'conversations',
      data: [
        [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hello!' }],
        [{ from: 'human', value: 'What is 2+3?' }, { from: 'gpt', value: '5' }, { from: 'human', value: 'And 2+4?' }, { from: 'gpt', value: '6' }],
      ],
    },
    { name: 'system', data: ['Be brief.', null] },
  ],
})
