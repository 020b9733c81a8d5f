// A whole file mapped into memory, for zero-copy reads of checkpoints. LibTorch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace llamarl {

// The mapping is copy-on-write (MAP_PRIVATE) over a read-only descriptor: the file is never
// modified, and a caller that writes into the bytes (say, an in-place op on a zero-copy tensor)
// gets private pages instead of a SIGSEGV. Immutable after Open, so safe to share across threads;
// tensors that alias the bytes hold a shared_ptr to keep the mapping alive.
class MappedFile {
 public:
  // Error naming the path and the OS error when the file cannot be opened, is not a regular file,
  // or cannot be mapped. An empty file gives size() == 0 and data() == nullptr.
  static std::shared_ptr<MappedFile> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data() const { return data_; }  // writes stay private to this process
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Gives the pages of [offset, offset + length) back to the kernel (madvise MADV_DONTNEED, whole
  // pages, rounded outward): they leave this process's resident set and are read again from the
  // page cache if touched. For bytes nobody wrote into: private copies of written pages are lost.
  void DropPages(size_t offset, size_t length) const;

 private:
  MappedFile() = default;
  std::string path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace llamarl
