#include "optimize/npy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "test_util.h"

namespace tend::optimize {
namespace {

using testing::Model;
using testing::TempDir;

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A .npy file with an arbitrary header dict and payload, for the bad-input cases.
std::string NpyBytes(const std::string& dict, const std::string& payload) {
  std::string header = dict;
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + payload;
}

TEST(Npy, RoundTrip) {
  TempDir dir;
  const std::vector<int64_t> shape = {3, 2, 2};
  std::vector<float> data(12);
  for (size_t i = 0; i < data.size(); ++i) data[i] = 0.5f * static_cast<float>(i) - 2.0f;
  ASSERT_TRUE(WriteNpy(dir.File("a.npy"), shape, data));
  auto a = ReadNpy(dir.File("a.npy"));
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->shape, shape);
  EXPECT_EQ(a->data, data);
  EXPECT_EQ(a->rows(), 3);
  EXPECT_EQ(a->row_size(), 4);
  EXPECT_EQ(a->row(1)[0], data[4]);
}

TEST(Npy, OneDimensionalRoundTripAndNumpyCanReadIt) {
  TempDir dir;
  const std::vector<int64_t> shape = {5};
  const std::vector<float> data = {1, 2, 3, 4, 5};
  ASSERT_TRUE(WriteNpy(dir.File("v.npy"), shape, data));
  auto r = testing::RunCommand(
      "/usr/bin/python3 -c \"import numpy as np,sys; a=np.load(sys.argv[1]); "
      "assert a.dtype==np.float32 and a.shape==(5,) and a.sum()==15\" " +
      dir.File("v.npy"));
  EXPECT_EQ(r.status, 0) << r.output;
}

TEST(Npy, ReadsFilesWrittenByNumpy) {
  auto a = ReadNpy(Model("cnn_calib.npy"));
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->shape, (std::vector<int64_t>{64, 1, 256}));
  auto labels = ReadNpyLabels(Model("cnn_labels.npy"));  // int64
  ASSERT_TRUE(labels) << labels.error().message;
  ASSERT_EQ(labels->size(), 96u);
  EXPECT_EQ((*labels)[0], 0.0f);
  EXPECT_EQ((*labels)[1], 1.0f);
}

TEST(Npy, DirectoryIsConcatenated) {
  TempDir dir;
  const std::vector<int64_t> s1 = {2, 3}, s2 = {1, 3};
  ASSERT_TRUE(WriteNpy(dir.File("a.npy"), s1, std::vector<float>{1, 2, 3, 4, 5, 6}));
  ASSERT_TRUE(WriteNpy(dir.File("b.npy"), s2, std::vector<float>{7, 8, 9}));
  auto a = ReadNpyFileOrDir(dir.path());
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(a->data.back(), 9.0f);
  const std::vector<int64_t> s3 = {1, 4};
  ASSERT_TRUE(WriteNpy(dir.File("c.npy"), s3, std::vector<float>{1, 2, 3, 4}));
  auto bad = ReadNpyFileOrDir(dir.path());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("does not match"), std::string::npos) << bad.error().message;
}

struct BadCase {
  const char* name;
  std::string bytes;
  const char* expect;
};

TEST(Npy, BadInputsGiveClearErrors) {
  TempDir dir;
  const std::string four_floats(16, '\0');
  const std::vector<BadCase> cases = {
      {"text", "hello, this is not numpy\n", "not a .npy file"},
      {"empty", "", "not a .npy file"},
      {"float64",
       NpyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", four_floats),
       "dtype '<f8' not supported"},
      {"int32", NpyBytes("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", four_floats),
       "expected float32"},
      {"bigendian",
       NpyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", four_floats),
       "dtype '>f4'"},
      {"fortran",
       NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four_floats),
       "Fortran-order"},
      {"truncated",
       NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }", four_floats),
       "truncated data"},
      {"trailing",
       NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", four_floats),
       "bytes after the data"},
      {"noshape", NpyBytes("{'descr': '<f4', 'fortran_order': False, }", four_floats),
       "missing key"},
      {"badshape",
       NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", four_floats),
       "non-integer dimension"},
      {"version9", std::string("\x93NUMPY\x09\x00\x10\x00", 10) + std::string(16, ' '),
       "unsupported .npy format version 9"},
  };
  for (const auto& c : cases) {
    const std::string path = dir.File(std::string(c.name) + ".npy");
    WriteBytes(path, c.bytes);
    auto r = ReadNpy(path);
    ASSERT_FALSE(r) << c.name;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos)
        << c.name << ": " << r.error().message;
    EXPECT_NE(r.error().message.find(path), std::string::npos) << c.name << ": names the file";
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << c.name << ": one line";
  }
}

TEST(Npy, NonFiniteValuesAreRejected) {
  TempDir dir;
  const std::vector<int64_t> shape = {3};
  ASSERT_TRUE(WriteNpy(dir.File("nan.npy"), shape, std::vector<float>{1, NAN, 2}));
  auto r = ReadNpy(dir.File("nan.npy"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("non-finite value"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("index 1"), std::string::npos) << r.error().message;
}

TEST(Npy, MissingFile) {
  auto r = ReadNpy("/nonexistent/x.npy");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("/nonexistent/x.npy"), std::string::npos);
}

TEST(Npy, LabelsMustBeOneDimensional) {
  auto r = ReadNpyLabels(Model("cnn_calib.npy"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("labels must be 1-D"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace tend::optimize
