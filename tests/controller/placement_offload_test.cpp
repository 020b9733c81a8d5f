// placement.offload: on by default for colocated placement, off for split, an error naming the key
// when set true with split, carried into the resolved Placement and the run's recipe.json.
#include "controller/recipe.h"

#include <gtest/gtest.h>

namespace llamarl::controller {
namespace {

Json RecipeWith(const Json& placement) {
  Json j = Json::parse(R"({
    "data": {"source": "arithmetic", "arithmetic": {"num_items": 50}, "eval": {"num_items": 10}},
    "reward": {"name": "arithmetic"},
    "run_dir": "runs/x"
  })");
  if (!placement.is_null()) j["placement"] = placement;
  return j;
}

std::string ParseError(const Json& placement) {
  try {
    RecipeConfig::FromJson(RecipeWith(placement));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PlacementOffload, DefaultsFollowThePlacementMode) {
  EXPECT_FALSE(RecipeConfig::FromJson(RecipeWith(Json())).placement.offload) << "split is the default mode";
  EXPECT_TRUE(RecipeConfig::FromJson(RecipeWith({{"mode", "colocated"}})).placement.offload);
  EXPECT_FALSE(RecipeConfig::FromJson(RecipeWith({{"mode", "colocated"}, {"offload", false}})).placement.offload);
  EXPECT_FALSE(RecipeConfig::FromJson(RecipeWith({{"mode", "split"}, {"offload", false}})).placement.offload)
      << "false is what split does anyway (a resolved recipe.json says so)";
}

TEST(PlacementOffload, TrueWithSplitPlacementIsAnErrorNamingTheKey) {
  const std::string error = ParseError({{"mode", "split"}, {"offload", true}});
  EXPECT_NE(error.find("placement.offload: true applies to colocated placement only"), std::string::npos) << error;
  EXPECT_NE(error.find("set placement.mode to colocated"), std::string::npos) << error;
  const std::string type_error = ParseError({{"mode", "colocated"}, {"offload", "yes"}});
  EXPECT_NE(type_error.find("placement.offload"), std::string::npos) << type_error;
  EXPECT_NE(type_error.find("true or false"), std::string::npos) << type_error;
}

TEST(PlacementOffload, ResolvedPlacementAndRecipeCarryIt) {
  RecipeConfig colocated = RecipeConfig::FromJson(RecipeWith({{"mode", "colocated"}}));
  const Placement p = ResolvePlacement(colocated.placement, 2);
  EXPECT_TRUE(p.offload);
  EXPECT_EQ(ResolvedRecipeJson(colocated, p)["placement"]["offload"], true);
  // The resolved recipe parses again (a resumed run reads it), for split as well.
  EXPECT_TRUE(RecipeConfig::FromJson(ResolvedRecipeJson(colocated, p)).placement.offload);
  RecipeConfig split = RecipeConfig::FromJson(RecipeWith({{"mode", "split"}}));
  const Placement q = ResolvePlacement(split.placement, 2);
  EXPECT_FALSE(q.offload);
  EXPECT_FALSE(RecipeConfig::FromJson(ResolvedRecipeJson(split, q)).placement.offload);
}

}  // namespace
}  // namespace llamarl::controller
